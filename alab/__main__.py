"""`alab <command> [flags]`: run one of the lab's commands (see `alab --help`)."""
from __future__ import annotations

import importlib.util
import runpy
import sys

# (subcommand, what it does). Each is a module with a `python -m` entry point; names are strings so
# that `alab --help` imports nothing heavy and the launcher depends on no study.
COMMANDS = (
    ("train_preferences", "generic preference / SFT training on your preference set (plan)"),
    ("train_preferences.results", "generic runs: loss, log-prob changes, reward accuracy"),
    ("persona_experiments", "Persona single-prompt likelihood displacement (plan)"),
    ("persona_experiments.results", "Persona results tables and plots"),
    ("pref_similarity", "preference-similarity quantile DPO runs (plan)"),
    ("pref_similarity.compute", "per-example CHES / edit-distance / hidden-state similarities of a preference set"),
    ("pref_similarity.results", "Figure 2 table and plot"),
    ("sorrybench", "SORRY-Bench unintentional unalignment DPO runs (plan)"),
    ("sorrybench.create_dataset", "SORRY-Bench preference set from the model's own samples"),
    ("sorrybench.evaluate_refusal", "refusal rate of a model on SORRY-Bench prompts"),
    ("sorrybench.results", "Figure 3 table and plot"),
    ("tds", "token distribution shift of a base/aligned pair (flags or plan)"),
    ("tds.generate", "aligned responses for TDS inputs"),
    ("tds.results", "TDS statistics tables and plots"),
    ("tds.viewer", "self-contained HTML viewer of a TDS analysis"),
    ("elasticity", "elasticity: classifier, resistance, rebound, factors (plan)"),
    ("elasticity.results", "elasticity tables and heatmaps"),
    ("harmful_ft", "harmful fine-tuning: align, fine-tune on partly harmful data, evaluate HS and FA (plan)"),
    ("harmful_ft.results", "harmful fine-tuning: HS and FA per method x p x n, CSV"),
    ("ensembles", "ensembles: focal diversity, pruning, TOPLA-Weighted fusion; H3Fusion (plan)"),
    ("ensembles.results", "ensembles: members and teams, diversity vs accuracy plot; H3Fusion table"),
    ("tiny", "build the offline tiny models (make tiny)"),
)


def usage() -> str:
    width = max(len(name) for name, _ in COMMANDS)
    lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS]
    return ("usage: alab COMMAND [flags]   (the same as python -m COMMAND [flags]; COMMAND --help for its flags)\n\n"
            "commands:\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    names = [name for name, _ in COMMANDS]
    if argv[0] not in names:
        from common.config import did_you_mean

        print(f"error: unknown command {argv[0]!r}{did_you_mean(argv[0], names)} (alab --help lists them)",
              file=sys.stderr)
        sys.exit(2)
    module = argv[0]
    if importlib.util.find_spec(module + ".__main__") is not None:  # a package: run its __main__
        module += ".__main__"
    sys.argv = [f"alab {argv[0]}", *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
