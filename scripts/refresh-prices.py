#!/usr/bin/env python3
"""Refreshes encore's pinned model price snapshot from LiteLLM's public price map.

    scripts/refresh-prices.py [VERSION]      # default: the newest litellm on PyPI

Downloads the litellm wheel of VERSION from PyPI (pip download, no dependencies), reads the
price map it ships (litellm/model_prices_and_context_window_backup.json, MIT licence), keeps
the text models priced per token (modes chat, completion, responses, embedding) and writes
crates/encore-telemetry/data/prices.json: USD per million tokens, one row per model key:

    [key, provider, input, output, cached_input, cache_write, reasoning,
     long_context_threshold, long_input, long_output]

Review the diff, run `cargo test -p encore-telemetry`, and commit it; the version string is
stored with every cost computed from the table.
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/encore-telemetry/data/prices.json"
MODES = {"chat", "completion", "responses", "embedding"}
MAP = "litellm/model_prices_and_context_window_backup.json"


def per_million(x):
    return None if x is None else round(float(x) * 1e6, 6)


def main():
    version = sys.argv[1] if len(sys.argv) > 1 else None
    spec = f"litellm=={version}" if version else "litellm"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--only-binary=:all:",
             "-q", "-d", tmp],
            check=True,
        )
        wheel = next(pathlib.Path(tmp).glob("litellm-*.whl"))
        version = wheel.name.split("-")[1]
        data = json.loads(zipfile.ZipFile(wheel).read(MAP))
    rows = []
    for key, v in sorted(data.items()):
        if not isinstance(v, dict) or v.get("mode") not in MODES:
            continue
        if "input_cost_per_token" not in v or "output_cost_per_token" not in v:
            continue
        long = sorted(
            (int(m.group(1)) * 1000, k)
            for k in v
            if (m := re.fullmatch(r"input_cost_per_token_above_(\d+)k_tokens", k))
        )
        threshold, long_in, long_out = None, None, None
        if long:
            threshold, k = long[0]
            long_in = per_million(v[k])
            long_out = per_million(v.get(k.replace("input_", "output_")))
        rows.append([
            key,
            v.get("litellm_provider", ""),
            per_million(v["input_cost_per_token"]),
            per_million(v["output_cost_per_token"]),
            per_million(v.get("cache_read_input_token_cost")),
            per_million(v.get("cache_creation_input_token_cost")),
            per_million(v.get("output_cost_per_reasoning_token")),
            threshold,
            long_in,
            long_out,
        ])
    doc = {
        "version": f"litellm-{version}",
        "source": f"https://pypi.org/project/litellm/{version}/ ({MAP}, MIT licence)",
        "columns": ["model", "provider", "input", "output", "cached_input", "cache_write",
                    "reasoning", "long_context_threshold", "long_input", "long_output"],
        "prices": rows,
    }
    with open(OUT, "w") as f:
        f.write("{\n")
        for k in ("version", "source", "columns"):
            f.write(f"  {json.dumps(k)}: {json.dumps(doc[k])},\n")
        f.write('  "prices": [\n')
        f.write(",\n".join("    " + json.dumps(r) for r in rows))
        f.write("\n  ]\n}\n")
    print(f"{OUT}: {len(rows)} models from litellm {version}")


if __name__ == "__main__":
    main()
