"""The grid driver's progress bar over Tune trials (a ``tune.Callback``)."""

from __future__ import annotations

import sys

from ray import tune


class TrialProgress(tune.Callback):
    """A tqdm bar over a phase's trials (Tune's own table is silenced with verbose=0).

    Tune pickles its run config (callbacks included) for ``Tuner.restore``; the bar is
    made in ``setup`` and left out of the pickle, so a restored run gets a fresh one.
    """

    def __init__(self, desc: str):
        self.desc = desc
        self.bar = None

    def __getstate__(self):
        return {"desc": self.desc, "bar": None}

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total_num_samples, desc=self.desc, unit="trial", file=sys.stderr, dynamic_ncols=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.bar is not None and "epoch" in result:
            running = sum(1 for t in trials if t.status == "RUNNING")
            self.bar.set_postfix_str(f"{running} running; {trial.config['trial']['name']} epoch {result['epoch']}",
                                     refresh=False)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.bar is not None:
            self.bar.update(1)

    def on_trial_error(self, iteration, trials, trial, **info):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.write(f"trial {trial.config['trial']['name']} failed; traceback in {trial.local_path}/error.txt")

    def on_experiment_end(self, trials, **info):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
