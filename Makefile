# Shortcuts for the commands in the README; each works without make too.
.PHONY: run test check bench stress

run:
	python3 scripts/run.py

test check:
	python3 scripts/test.py

bench:
	python3 bench/run.py

stress:
	python3 scripts/stress.py
