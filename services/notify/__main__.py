from runtime.service import run
from services.notify.app import main

run(main)
