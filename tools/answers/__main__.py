from tools.answers import main

main()
