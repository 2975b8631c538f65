from runtime.service import run
from services.review.app import main

run(main)
