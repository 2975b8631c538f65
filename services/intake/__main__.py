from runtime.service import run
from services.intake.app import main

run(main)
