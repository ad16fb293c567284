"""The `scalingkit` command line: main.py is the click group; train.py, fit.py and optimal.py hold the commands,
tables.py the status and L(N, D) tables they print.

Thin: parse, call the library, print. The top of the flow, so it may import every stage; no stage imports it.
"""
