"""rrn-bench with the minGRU plugin of tests/mingru_plugin.py registered as `mingru_plugin` (what an installed
plugin's entry point does), for docs/speed.md's plugin fast-path table:

    RRN_COMPILE_STEP=1 python tools/bench_plugin.py cells=mingru_plugin,res_rnn,gres_rnn \\
        mingru_plugin.compile_step=true,false peers=all hidden=128,512 threads=1 repeats=9 memory=false mode=train

Every argument is an rrn-bench setting (rrn-bench --help); memory=false because rrn-bench's memory probe runs in
a fresh process, which does not have the plugin registered.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mingru_plugin  # noqa: E402

from rrn_app.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    mingru_plugin.register("mingru_plugin")
    main(sys.argv[1:])
