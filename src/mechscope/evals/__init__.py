"""Evaluating dictionaries: reconstruction metrics, spliced-model CE loss and KL, ``eval.json`` and its plot.

    from mechscope.evals import evaluate
    report = evaluate(model, {"sae": sae}, contexts)     # EvalReport
    report.write("eval.json"); plot_eval(report, "eval.png")
"""

from .downstream import Downstream, evaluate_many, evaluate_with_model
from .metrics import Reconstruction, ReconstructionStats, density_histogram, evaluate_activations
from .report import SCHEMA, DictionaryEval, EvalReport, plot_eval, read_eval
from .run import evaluate, evaluate_run

__all__ = ["SCHEMA", "DictionaryEval", "Downstream", "EvalReport", "Reconstruction", "ReconstructionStats",
           "density_histogram", "evaluate", "evaluate_activations", "evaluate_run", "evaluate_many",
           "evaluate_with_model", "plot_eval", "read_eval"]
