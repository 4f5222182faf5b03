# goblocks — build, test and run.
#
#   make run     three local nodes on :3001-:3003 (foreground; Ctrl-C stops)
#   make test    unit, integration and in-process cluster tests
#   make lint    gofmt, go vet, staticcheck
#   make bench   in-process cluster benchmarks (figures in BENCHMARKS.md)
#   make bench-cluster   the shared sitting (refserver vs 3 nodes of this build)
#   make bench-nbd       fio over NBD vs blockbench over HTTP on one cluster

GO        ?= go
BIN       ?= bin/goblocks
PKGS      ?= ./...
STATICCHECK_VERSION ?= v0.8.2

export CGO_ENABLED ?= 0

.PHONY: all build install deps test test-race lint bench bench-cluster bench-cpu bench-memory bench-join bench-rebalance bench-nbd jepsen run fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "-s -w" -o $(BIN) ./node

# The membership and migration tests run a real ZooKeeper, the
# observability tests a real Prometheus, the /ui test headless Chromium and
# the NBD tests libnbd's tools, qemu-io, fio and e2fsprogs, all from
# Debian's packages (no container registry needed).
ZK_JAR := /usr/share/java/zookeeper.jar
PROMETHEUS := /usr/bin/prometheus
NBD_TOOLS := nbdinfo nbdcopy qemu-io fio nbdkit mkfs.ext4 e2fsck

deps:
	@missing=""; for t in $(NBD_TOOLS) chromium; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ ! -f $(ZK_JAR) ] || [ ! -x $(PROMETHEUS) ] || [ -n "$$missing" ]; then \
	  echo "installing ZooKeeper, Prometheus, Chromium and the NBD tools (Debian packages) for the integration tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    zookeeper prometheus chromium fonts-dejavu-core libnbd-bin nbdkit fio qemu-utils e2fsprogs >/dev/null; \
	fi

test: deps
	$(GO) test -count=1 -timeout 15m $(PKGS)

# The CLI and node binary on the PATH.
PREFIX ?= /usr/local
install: build
	install -d $(PREFIX)/bin
	install -m 0755 $(BIN) $(PREFIX)/bin/goblocks

# The race detector needs cgo.
test-race: deps
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./node/replication/... ./node/storage/... ./node/app/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

bench:
	$(GO) test -run XXX -bench . -benchtime 3s ./node/app/

# One sitting of the shared load generator against refserver and a 3-node
# cluster of this build (nodes need a cluster token: a fresh one per run).
SITTING ?= ../shared/bench/sitting.sh
bench-cluster: build
	NODE_ENV="ClusterToken=$$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n') $(NODE_ENV)" $(SITTING) $(BIN) $(or $(BENCH_SECONDS),8) $(or $(BENCH_CLIENTS),32)

# Node CPU per operation (PUT, GET, mixed) and WAL syncs per second on a
# 3-node cluster: steadier than throughput on a shared VM.
bench-cpu: build
	scripts/bench-cpu.sh $(BIN) $(or $(BENCH_SECONDS),10) $(or $(BENCH_CLIENTS),32)

# A fourth node joins three that hold 20,000 blocks: MB/s it receives,
# blocks received per block gained; and the GC pass at a swap.
bench-join: deps
	$(GO) test -run XXX -bench 'BenchmarkJoinTransfer' -benchtime 3x ./node/app/
	$(GO) test -run XXX -bench 'BenchmarkReconcileMarksStale' -benchtime 3x ./node/migration/

# A rebalance at scale with real node processes and ZooKeeper: 3 nodes
# preloaded with REBALANCE_BLOCKS blocks, a 4th joins, then one leaves,
# under a steady client load (internal/rebalancebench).
REBALANCE_BLOCKS ?= 1000000
bench-rebalance: deps build
	$(GO) test -run XXX -bench BenchmarkRebalance -benchtime 1x -timeout 90m ./internal/rebalancebench/ -args -blocks $(REBALANCE_BLOCKS) -bin $(CURDIR)/$(BIN)

# Volumes over NBD against the HTTP block API on the same 3-node cluster
# (fio over NBD vs blockbench over HTTP), and nbdkit file as the ceiling.
bench-nbd: deps build
	scripts/bench-nbd.sh $(BIN) $(or $(BENCH_SECONDS),10)

# Resident memory of each node of a loaded 3-node cluster.
bench-memory: build
	scripts/bench-memory.sh $(BIN) $(or $(BENCH_SECONDS),8)

# The long linearizability check: every fault, four rounds (make test runs
# one short round).
jepsen: deps
	GOBLOCKS_JEPSEN=long $(GO) test -count=1 -timeout 10m -run TestLinearizableUnderFaults -v ./node/app/

# Short fuzzing pass over every fuzz target (seed corpora run in 'make test').
fuzz:
	$(GO) test -run XXX -fuzz FuzzDecodeFrames -fuzztime 30s ./node/wire/
	$(GO) test -run XXX -fuzz FuzzParseRecordHeaders -fuzztime 30s ./node/wire/
	$(GO) test -run XXX -fuzz FuzzReadMeta -fuzztime 30s ./node/wire/
	$(GO) test -run XXX -fuzz FuzzValidateID -fuzztime 30s ./node/api/
	$(GO) test -run XXX -fuzz FuzzOwners -fuzztime 30s ./node/ring/
	$(GO) test -run XXX -fuzz FuzzServer -fuzztime 30s ./node/nbd/

run: deps build
	./scripts/run-local.sh $(BIN)

clean:
	rm -rf bin

# ---- Docker Compose lab ------------------------------------------------
#
#   make up [N=3] [OBSERVABILITY=1]   build what is missing, start ZooKeeper,
#                                     N nodes and Prometheus, wait for health
#   make scale N=4                    add or remove nodes (a migration runs)
#   make ps | logs | down             status, follow logs, remove everything
#
# Works offline: the node image is FROM scratch, and `make images` builds
# the ZooKeeper and Prometheus images from Debian packages under the
# official names when they are not present. OBSERVABILITY=1 adds Grafana
# and Jaeger (official images: pulled if missing; without a registry,
# compose/check-images.sh says how to load them) and turns tracing on.

IMAGE            ?= goblocks:latest
ZOOKEEPER_IMAGE  ?= zookeeper:3.8
PROMETHEUS_IMAGE ?= prom/prometheus:v2.42.0
GRAFANA_IMAGE    ?= grafana/grafana:10.4.2
JAEGER_IMAGE     ?= jaegertracing/all-in-one:1.57
# node-N is published on host port $(NODE_PORT_PREFIX)N (3001-3009), its
# NBD server on $(NBD_PORT_PREFIX)N (10801-10809).
NODE_PORT_PREFIX ?= 300
NBD_PORT_PREFIX  ?= 1080
PROJECT          ?= goblocks
N                ?= 3
# Seconds `make up` and `make scale` wait for healthy nodes and a settled ring.
WAIT_TIMEOUT     ?= 300
export IMAGE ZOOKEEPER_IMAGE PROMETHEUS_IMAGE GRAFANA_IMAGE JAEGER_IMAGE NODE_PORT_PREFIX NBD_PORT_PREFIX

# The v2 plugin when the machine has it, else docker-compose v1 (>= 1.28).
ifeq ($(origin COMPOSE),undefined)
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
endif
COMPOSE_CMD = $(COMPOSE) -p $(PROJECT) -f docker-compose.yml \
  $(if $(filter 1 true yes,$(OBSERVABILITY)),--env-file compose/observability.env)

.PHONY: compose-dep image images up down scale logs ps e2e fresh-check

image: build
	@mkdir -p bin/image-root/data
	docker build -t $(IMAGE) .

# Both in parallel (each is mostly a debootstrap download when missing).
# debootstrap is installed first, once: two apt-get at once fail on the
# dpkg lock. Each builder's status is collected, so a failure of either
# fails make only after both have stopped.
images:
	@if ! docker image inspect $(ZOOKEEPER_IMAGE) >/dev/null 2>&1 || ! docker image inspect $(PROMETHEUS_IMAGE) >/dev/null 2>&1; then \
	  if ! command -v debootstrap >/dev/null; then \
	    echo "images: installing debootstrap (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; \
	  fi; \
	fi
	@scripts/images/build-zookeeper.sh $(ZOOKEEPER_IMAGE) & zk=$$!; \
	 scripts/images/build-prometheus.sh $(PROMETHEUS_IMAGE) & prom=$$!; \
	 wait $$zk; zkrc=$$?; wait $$prom; promrc=$$?; \
	 [ $$zkrc = 0 ] || echo "images: the ZooKeeper image build failed (exit $$zkrc)"; \
	 [ $$promrc = 0 ] || echo "images: the Prometheus image build failed (exit $$promrc)"; \
	 [ $$zkrc = 0 ] && [ $$promrc = 0 ]

# Compose v1 from Debian when neither it nor the v2 plugin is installed
# (make up and the e2e lab scenario run the compose file).
compose-dep:
	@if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then \
	  echo "installing docker-compose (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	fi

up: compose-dep images image
	$(if $(filter 1 true yes,$(OBSERVABILITY)),compose/check-images.sh $(GRAFANA_IMAGE) $(JAEGER_IMAGE))
	$(COMPOSE_CMD) up -d --remove-orphans --scale node=$(N)
	compose/wait-nodes.sh $(N) $(WAIT_TIMEOUT)
	@COMPOSE="$(COMPOSE_CMD)" compose/nodes.sh
	@echo "Prometheus: http://localhost:9090$(if $(filter 1 true yes,$(OBSERVABILITY)),   Grafana: http://localhost:3000 (admin/admin)   Jaeger: http://localhost:16686)"

# What a newcomer's first `make up` meets: no lab images, no debootstrap,
# no image cache. Removes the three images and debootstrap first (the
# cache is left alone: a fresh empty one is used), then brings the lab up
# and down.
fresh-check:
	-$(COMPOSE) -p $(PROJECT) -f docker-compose.yml --profile observability down -v --remove-orphans -t $(DOWN_TIMEOUT)
	-docker rmi -f $(ZOOKEEPER_IMAGE) $(PROMETHEUS_IMAGE) $(IMAGE)
	-DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq debootstrap >/dev/null
	cache=$$(mktemp -d) && CACHE_DIR=$$cache $(MAKE) up; rc=$$?; rm -rf $$cache; $(MAKE) down; exit $$rc

scale:
	$(COMPOSE_CMD) up -d --no-recreate --scale node=$(N)
	compose/wait-nodes.sh $(N) $(WAIT_TIMEOUT)
	@COMPOSE="$(COMPOSE_CMD)" compose/nodes.sh

# Every profile, so Grafana and Jaeger go too; -v removes the node volume.
# The data goes, so a graceful leave (which cannot finish when every node
# leaves at once: it would wait LeaveTimeout) is cut short.
DOWN_TIMEOUT ?= 10
down:
	$(COMPOSE) -p $(PROJECT) -f docker-compose.yml --profile observability down -v --remove-orphans -t $(DOWN_TIMEOUT)

logs:
	$(COMPOSE_CMD) logs -f --tail=100 $(SERVICE)

# Containers by name and state (compose ps also lists the gateway's nine
# published ports), then which node is on which host port.
ps:
	@docker ps -a --filter label=com.docker.compose.project=$(PROJECT) --format 'table {{.Names}}\t{{.Status}}\t{{.Image}}'
	@COMPOSE="$(COMPOSE_CMD)" compose/nodes.sh

# ---- End-to-end suite ----------------------------------------------------
#
# testcontainers-go against real node and ZooKeeper containers (e2e/, build
# tag e2e). Ryuk cannot be pulled offline: the suite cleans up itself.
E2E_TIMEOUT ?= 25m
e2e: deps compose-dep images image
	TESTCONTAINERS_RYUK_DISABLED=true GOBLOCKS_IMAGE=$(IMAGE) ZOOKEEPER_IMAGE=$(ZOOKEEPER_IMAGE) PROMETHEUS_IMAGE=$(PROMETHEUS_IMAGE) \
	  $(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e/
