from services.statistics.app import main

main()
