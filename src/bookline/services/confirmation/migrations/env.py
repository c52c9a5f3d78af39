from bookline.adapters.migrations import run_env

run_env()
