from runtime.service import run
from services.budget.app import main

run(main)
