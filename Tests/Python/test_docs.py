"""docs/ARCHITECTURE.md matches the code: every JSON-RPC method the code declares is in its method
table and every method the table names exists, and the ports table names the ports and config keys the
default config uses. Docs that drift from the code mislead the next person more than no docs."""
import json
import os
import re

from conftest import ROOT

ARCHITECTURE = open(os.path.join(ROOT, "docs", "ARCHITECTURE.md")).read()


def declared_methods():
    names = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "Sources")):
        for f in files:
            if f.endswith(".swift"):
                names |= set(re.findall(r'static let name = "([a-z]+(?:\.[A-Za-z]+)?)"', open(os.path.join(folder, f)).read()))
    return names | {"rpc.cancel", "rpc.subscribe"}  # the RPC layer's own


def documented_methods():
    section = ARCHITECTURE.split("## Control plane", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names |= set(re.findall(r"`([a-z]+(?:\.[A-Za-z]+)?)`", first_cell))
    return names


def test_the_rpc_method_table_lists_exactly_the_methods_the_code_declares():
    code, docs = declared_methods(), documented_methods()
    assert code - docs == set(), f"declared but not in docs/ARCHITECTURE.md's method table: {sorted(code - docs)}"
    assert docs - code == set(), f"in the method table but declared nowhere: {sorted(docs - code)}"


def test_the_ports_table_matches_the_default_config():
    config = json.load(open(os.path.join(ROOT, "config", "app_config.json")))
    expected = {config["proxies"]["ollama"]["port"]: "proxies.ollama", config["proxies"]["lmstudio"]["port"]: "proxies.lmstudio",
                config["dashboard"]["api_port"]: "dashboard.api_port", config["dashboard"]["web_port"]: "dashboard.web_port"}
    section = ARCHITECTURE.split("## Ports", 1)[1].split("\n## ", 1)[0]
    rows = {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| `([a-z_.]+)` \|", section, re.M)}
    assert rows == expected
