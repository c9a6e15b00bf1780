"""Self-contained HTML pages of an analysis: an index of examples and one page per example.

    python -m tds.viewer --analysis_dir O [--output_dir O/viewer] [--max_examples 200]

Open O/viewer/index.html from disk (file://): no server, no CDN, the CSS and JavaScript are inlined.
Each example page shows the response as tokens coloured by category; clicking a token shows both
models' top-k next-token distributions at that position with full-vocabulary probabilities, the
token's ranks, both KLs and entropies. Texts go into the HTML through `html.escape` and into the
embedded JSON with <, >, & as \\u escapes; the script writes them with textContent only.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from common.cli import command_main
from common.config import option
from common.tracking import atomic_write_text, read_json
from tds.analysis import CATEGORY_NAMES
from tds.storage import EXAMPLE_TABLE, TOKEN_TABLE, read_table, read_token_strings

ASSETS = Path(__file__).resolve().parent / "viewer_assets"
POSITION_FIELDS = ("base_rank", "aligned_rank", "base_logprob", "aligned_logprob", "kl_aligned_base",
                   "kl_base_aligned", "base_entropy", "aligned_entropy", "category")


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def script_json(obj) -> str:
    """JSON safe inside <script>: no "</script>", no HTML entities, no NaN/Infinity (-> null)."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _number(x) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def _page(title: str, body: str, script: str = "") -> str:
    css = (ASSETS / "style.css").read_text()
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>{esc(title)}</title>\n"
            f"<style>\n{css}</style></head>\n<body>\n{body}\n{script}</body></html>\n")


def _pair_title(analysis_dir: Path) -> str:
    config_path = analysis_dir / "config.json"
    if config_path.is_file():
        config = read_json(config_path)
        return f"{config.get('base_model', '?')} \u2192 {config.get('aligned_model', '?')}"
    return analysis_dir.name


def _legend() -> str:
    return ("<p class=\"legend\">" + "".join(f"<span class=\"c{k}\">{name}</span>" for k, name in
                                              enumerate(CATEGORY_NAMES)) +
            "<span class=\"muted\">unshifted: the aligned token is the base top-1; marginal: 2nd or 3rd; "
            "shifted: further down (default thresholds)</span></p>")


def _percent(x) -> str:
    return "&ndash;" if not np.isfinite(x) else f"{100 * x:.1f}%"


def index_page(title: str, examples: dict[str, np.ndarray], shown: int) -> str:
    header = ["#", "id", "instruction", "tokens", "unshifted", "marginal", "shifted", "mean KL(a||b)"]
    rows = []
    for k in range(shown):
        instruction = str(examples["instruction"][k])
        short = instruction if len(instruction) <= 120 else instruction[:117] + "..."
        ratios = [examples[f"{name}_ratio"][k] for name in CATEGORY_NAMES]
        kl = examples["mean_kl_aligned_base"][k]
        cells = [(k, f"<a href=\"example_{k}.html\">{k}</a>", "num"), (examples["id"][k], esc(examples["id"][k]), ""),
                 (instruction, esc(short), ""), (examples["num_tokens"][k], str(examples["num_tokens"][k]), "num")]
        cells += [(r if np.isfinite(r) else -1, _percent(r), "num") for r in ratios]
        cells += [(kl if np.isfinite(kl) else -1, "&ndash;" if not np.isfinite(kl) else f"{kl:.3f}", "num")]
        rows.append("<tr>" + "".join(f"<td class=\"{cls}\" data-v=\"{esc(v)}\">{shown_text}</td>"
                                     for v, shown_text, cls in cells) + "</tr>")
    head = "".join(f"<th class=\"sortable{' num' if i == 0 or i > 2 else ''}\">{esc(h)}</th>"
                   for i, h in enumerate(header))
    body = (f"<h1>Token distribution shift: {esc(title)}</h1>\n{_legend()}\n"
            f"<p class=\"muted\">{shown} of {len(examples['example'])} examples; click a column to sort.</p>\n"
            f"<table id=\"examples\"><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) +
            "\n</tbody></table>")
    return _page(f"TDS: {title}", body, f"<script>\n{(ASSETS / 'index.js').read_text()}</script>\n")


def _token_html(text: str) -> str:
    # A newline token shows as a visible mark and still breaks the line (the block is pre-wrap).
    return esc(text.replace("\n", "\u21b5\n")) if text else "&#8203;"


def example_page(title: str, k: int, shown: int, examples: dict[str, np.ndarray], rows: dict[str, np.ndarray],
                 vocab: dict[int, str]) -> str:
    n = len(rows["token_id"])
    positions, used = [], set()
    for i in range(n):
        entry = {"token": int(rows["token_id"][i]),
                 **{f: (int(rows[f][i]) if f.endswith(("rank", "category")) else _number(rows[f][i]))
                    for f in POSITION_FIELDS}}
        for side in ("base", "aligned"):
            entry[f"{side}_topk_ids"] = [int(t) for t in rows[f"{side}_topk_ids"][i]]
            entry[f"{side}_topk_logprobs"] = [_number(x) for x in rows[f"{side}_topk_logprobs"][i]]
            used.update(entry[f"{side}_topk_ids"])
        used.add(entry["token"])
        positions.append(entry)
    data = {"positions": positions, "vocab": {t: vocab.get(t, f"<id {t}>") for t in sorted(used)}}
    tokens = "".join(f"<span class=\"tok c{int(rows['category'][i])}\" data-i=\"{i}\">"
                     f"{_token_html(vocab.get(int(rows['token_id'][i]), ''))}</span>" for i in range(n))
    ratios = ", ".join(f"{name} {_percent(examples[f'{name}_ratio'][k])}" for name in CATEGORY_NAMES)
    nav = "<nav><a href=\"index.html\">index</a>" + \
        (f"<a href=\"example_{k - 1}.html\">&larr; previous</a>" if k > 0 else "") + \
        (f"<a href=\"example_{k + 1}.html\">next &rarr;</a>" if k + 1 < shown else "") + "</nav>"
    body = (f"{nav}\n<h1>Example {k} (id {esc(examples['id'][k])})</h1>\n<p class=\"muted\">{esc(title)}</p>\n"
            f"<h2>Instruction</h2>\n<div class=\"instruction\">{esc(examples['instruction'][k])}</div>\n"
            f"<details><summary>prompts as the models saw them</summary>\n<h3>base</h3>"
            f"<div class=\"prompt\">{esc(examples['base_prompt'][k])}</div>\n<h3>aligned</h3>"
            f"<div class=\"prompt\">{esc(examples['aligned_prompt'][k])}</div></details>\n"
            f"<h2>Aligned response ({n} tokens: {ratios})</h2>\n{_legend()}\n"
            f"<p class=\"muted\">Click a token (then use the arrow keys) to compare the two distributions.</p>\n"
            f"<div class=\"layout\"><div class=\"response\" id=\"response\">{tokens}</div>\n"
            f"<aside id=\"panel\" hidden></aside></div>")
    script = (f"<script type=\"application/json\" id=\"tds-data\">{script_json(data)}</script>\n"
              f"<script>\n{(ASSETS / 'example.js').read_text()}</script>\n")
    return _page(f"TDS example {k}: {title}", body, script)


def write_viewer(analysis_dir: str | Path, output_dir: str | Path | None = None, *, max_examples: int = 200) -> Path:
    """Write index.html and example_<k>.html for the first `max_examples` examples; returns the index path."""
    analysis_dir = Path(analysis_dir)
    output_dir = Path(output_dir) if output_dir is not None else analysis_dir / "viewer"
    table = read_table(analysis_dir / TOKEN_TABLE)
    examples = read_table(analysis_dir / EXAMPLE_TABLE)
    vocab = read_token_strings(analysis_dir)
    title = _pair_title(analysis_dir)
    shown = min(max_examples, len(examples["example"]))
    bounds = np.searchsorted(table["example"], np.arange(shown + 1))  # rows are sorted by example
    for k in range(shown):
        rows = {name: values[bounds[k]:bounds[k + 1]] for name, values in table.items()}
        atomic_write_text(output_dir / f"example_{k}.html", example_page(title, k, shown, examples, rows, vocab))
    index = output_dir / "index.html"
    atomic_write_text(index, index_page(title, examples, shown))
    return index


@dataclass
class ViewerOptions:
    analysis_dir: str = option(help="a finished python -m tds run directory")
    output_dir: Optional[str] = option(None, help="default: ANALYSIS_DIR/viewer")
    max_examples: int = option(200, min=0)


def main(argv=None) -> None:
    def write(args: ViewerOptions) -> None:
        index = write_viewer(args.analysis_dir, args.output_dir, max_examples=args.max_examples)
        print(f"open {index.resolve().as_uri()}")

    command_main("python -m tds.viewer", __doc__.splitlines()[0], ViewerOptions, write, argv)


if __name__ == "__main__":
    main()
