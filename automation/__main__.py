from gpufleet.automation.cli.main import run

run()
