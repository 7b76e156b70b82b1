from dlstore.cli import main

main()
