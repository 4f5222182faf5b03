# goblocks — build, test and run.
#
#   make run     three local nodes on :3001-:3003 (foreground; Ctrl-C stops)
#   make test    unit, integration and in-process cluster tests
#   make lint    gofmt, go vet, staticcheck
#   make bench   cluster benchmarks (figures in BENCHMARKS.md)

GO        ?= go
BIN       ?= bin/goblocks
PKGS      ?= ./...
STATICCHECK_VERSION ?= v0.8.2

export CGO_ENABLED ?= 0

.PHONY: all build deps test test-race lint bench run fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "-s -w" -o $(BIN) ./node

# The membership and migration tests run a real ZooKeeper from Debian's
# package (no container registry needed).
ZK_JAR := /usr/share/java/zookeeper.jar

deps:
	@if [ ! -f $(ZK_JAR) ]; then \
	  echo "installing ZooKeeper (Debian package) for the integration tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >/dev/null; \
	fi

test: deps
	$(GO) test -count=1 -timeout 15m $(PKGS)

# The race detector needs cgo.
test-race: deps
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./node/replication/... ./node/storage/... ./node/app/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

bench:
	$(GO) test -run XXX -bench . -benchtime 3s ./node/app/

# Short fuzzing pass over every fuzz target (seed corpora run in 'make test').
fuzz:
	$(GO) test -run XXX -fuzz FuzzDecodeFrames -fuzztime 30s ./node/wire/
	$(GO) test -run XXX -fuzz FuzzParseRecordHeaders -fuzztime 30s ./node/wire/
	$(GO) test -run XXX -fuzz FuzzValidateID -fuzztime 30s ./node/api/
	$(GO) test -run XXX -fuzz FuzzOwners -fuzztime 30s ./node/ring/

run: deps build
	./scripts/run-local.sh $(BIN)

clean:
	rm -rf bin
