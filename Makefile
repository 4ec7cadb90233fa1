# The two commands of the README, plus benchmarks.
.PHONY: up test test-deploy bench bench-overhead bench-hosts bench-http bench-runners bench-gateway bench-load bench-audio bench-loop bench-scheduling bench-lmstudio bench-pull

# Install what is missing and run Llama Runner on the default config.
up:
	scripts/up.sh

# Run every test (what .ci/run runs).
test:
	scripts/test.sh

# The container deployment for real: base-image stand-ins, deploy/Dockerfile built with podman, the
# compose stack started and checked (scripts/test_deploy.sh; about 20 minutes the first time).
test-deploy:
	scripts/test_deploy.sh

# Gateway throughput against nginx, with wrk.
bench-http:
	python3 scripts/bench_http.py

# Two models on one slot: mixed traffic with the batch and fifo policies against llama-server's router,
# and an abandoned load stopped or not.
bench-scheduling:
	python3 scripts/bench_scheduling.py

# LM Studio's SDK protocol (websocket predict) against the OpenAI API's stream, same model, same run:
# time to the first fragment, and llama-server's own stream as the floor.
bench-lmstudio:
	python3 scripts/bench_lmstudio.py

# Runner readiness overhead against llama-server's own start, and the swap cycle.
# Hub pulls (/api/pull through the mesh) against curl of the same 1 GiB file from the same local hub stand-in,
# over HTTP and HTTPS, with model-registry's peak RSS.
bench-pull:
	python3 scripts/bench_pull.py

bench-runners:
	python3 scripts/bench_runners.py

# Time the gateway adds to a real streamed request, against the runner directly and beside llama-server's
# router mode, plus idle memory (make bench gathers it into docs/benchmarks.md).
bench-gateway:
	python3 scripts/bench_gateway.py

# 256 concurrent streaming clients for 60 s, direct and through the gateway: errors, chunk gaps, gateway RSS.
bench-load:
	python3 scripts/bench_load.py

# Speech to text through the gateway against whisper-server direct.
bench-audio:
	python3 scripts/bench_audio.py

# Event-loop latency (GET /api/version, /api/config) at rest, while a 100 MB upload is spooled and while
# discovery scans 2,000 GGUF files.
bench-loop:
	python3 scripts/bench_loop.py

# The gateway's own time per streamed request (its x-llama-runner-overhead-ms), one build or two
# (BENCH_B=<bin dir of another build>) in alternating rounds.
bench-overhead:
	python3 scripts/bench_overhead.py $(if $(BENCH_B),--b $(BENCH_B))

# One gateway in front of runners on 1, 2 and 3 simulated hosts (network namespaces: root), and the
# failover gap when a host's link is cut.
bench-hosts:
	python3 scripts/bench_hosts.py

# Every benchmark above but bench-runners, gathered into docs/benchmarks.md with the machine described.
bench:
	python3 scripts/bench_all.py
