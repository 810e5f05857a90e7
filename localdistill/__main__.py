from localdistill.cli import main

main()
