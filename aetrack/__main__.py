from aetrack.cli import main

main()
