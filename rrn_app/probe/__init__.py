"""`rrn-probe`: the gradient flow through a model's layers and timesteps (cli.py), measured on a step-by-step
replay of its cell (replay.py, measure.py) and drawn (plots.py)."""
