# Developer entry points. `make help` lists them. The e2e flow needs docker and kind on your machine;
# everything else runs offline (CI: .ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= .venv/bin/python
HELM ?= .tools/bin/helm
KIND ?= kind
KIND_CLUSTER ?= klio
VERSION ?= dev
OPERATOR_IMAGE ?= klio-operator:$(VERSION)
RUNTIME_IMAGE ?= klio-runtime:$(VERSION)
# Example job images: examples/<dir>/Dockerfile → klio-examples/<dir, _ as ->:0.1.0, the names
# examples/kliojobs use. Built FROM the runtime image.
EXAMPLE_DIRS := $(patsubst %/Dockerfile,%,$(wildcard examples/*/Dockerfile))
# Only the e2e targets use this cluster; `make test` leaves KUBECONFIG alone (e2e tests skip).
KIND_KUBECONFIG ?= $(HOME)/.kube/kind-$(KIND_CLUSTER)

.PHONY: help tools lint test chart-lint images example-images kind-up kind-load e2e e2e-down

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

tools:  ## install the machine tools the tests use (prometheus, helm, …)
	bash scripts/install-test-tools.sh

lint:  ## ruff, mypy, hadolint
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/hadolint docker/*.Dockerfile

test:  ## the whole suite (e2e skipped unless KUBECONFIG names a cluster)
	$(PYTHON) -m pytest

chart-lint:  ## helm lint --strict with every values variant
	$(HELM) lint --strict helm/klio
	for values in helm/klio/ci/*-values.yaml; do $(HELM) lint --strict helm/klio --values $$values || exit 1; done

images:  ## build the operator and runtime images (docker/README.md)
	docker build -f docker/operator.Dockerfile -t $(OPERATOR_IMAGE) .
	docker build -f docker/runtime.Dockerfile -t $(RUNTIME_IMAGE) -t klio-runtime:0.1.0 .

example-images: images  ## build each examples/*/Dockerfile as klio-examples/<name>:0.1.0
	for dir in $(EXAMPLE_DIRS); do \
	  name=$$(basename $$dir | tr _ -); \
	  docker build -t klio-examples/$$name:0.1.0 $$dir || exit 1; \
	done

kind-up:  ## create the kind cluster of kind-config.yaml (kubeconfig: $(KIND_KUBECONFIG))
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || \
	  $(KIND) create cluster --config kind-config.yaml --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG) --wait 120s
	# also for a cluster made before (by hand, or an earlier run with another kubeconfig)
	$(KIND) export kubeconfig --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG)

kind-load: images example-images  ## load the images into the kind nodes
	$(KIND) load docker-image $(OPERATOR_IMAGE) $(RUNTIME_IMAGE) --name $(KIND_CLUSTER)
	for dir in $(EXAMPLE_DIRS); do \
	  $(KIND) load docker-image klio-examples/$$(basename $$dir | tr _ -):0.1.0 --name $(KIND_CLUSTER) || exit 1; \
	done

# The whole flow: a cluster, the images in it, then tests/e2e, which installs the emulators
# (tests/e2e/manifests), the chart (helm/klio/ci/kind-values.yaml), applies examples/kliojobs,
# publishes a ping at the root and waits, with deadlines, for Ready conditions and the ping
# at every leaf.
e2e: kind-up kind-load  ## run tests/e2e against a local kind cluster
	KUBECONFIG=$(KIND_KUBECONFIG) KLIO_E2E_OPERATOR_TAG=$(VERSION) $(PYTHON) -m pytest tests/e2e -m e2e -v -rs

e2e-down:  ## delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER) --kubeconfig $(KIND_KUBECONFIG)
