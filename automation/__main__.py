from automation.cli.main import run

run()
