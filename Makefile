# Thin front end over CMake.  The two README commands:
#   make run     set up, build, and run the main job (pfor compare)
#   make check   set up, then build and run every test in three builds:
#                plain, AddressSanitizer+UBSan, ThreadSanitizer
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup build run check test test-asan test-tsan valgrind format clean

all: build

setup:
	@sh tools/setup.sh

# $(call configure,dir,sanitizer)
define configure
	@cmake -S . -B $(1) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPF_SANITIZE=$(2) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(1) -j$(JOBS)
endef

build: setup
	$(call configure,build,)

run: build
	./build/pfor compare

test: build
	cd build && ./pfor-tests
	sh tests/install/check_install.sh build
	sh tests/mpi/run.sh build

test-asan: setup
	$(call configure,build-asan,address)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 PF_TEST_TIMEOUT_SCALE=3 ./pfor-tests
	# MPI ranks: Open MPI itself leaks at exit, so leak checking is off there
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  sh tests/mpi/run.sh build-asan

test-tsan: setup
	$(call configure,build-tsan,thread)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  PF_TEST_TIMEOUT_SCALE=5 ./pfor-tests
	TSAN_OPTIONS=halt_on_error=1 sh tests/mpi/run.sh build-tsan

# memcheck over every suite.  test_compare and test_examples run ./pfor, the
# examples and gnuplot as programs: valgrind follows those (not gnuplot, whose
# own leaks are not ours), and their errors turn into exit status 99, a failed
# test.  Left out: the tests that lower RLIMIT_NOFILE (for themselves or for
# ./pfor), which valgrind does not really do (it refuses a lower hard limit and
# only pretends to lower the soft one); run under valgrind anyway, they skip.
# About 7 minutes.
VALGRIND_TESTS = test_error test_executor test_loop test_core_edges test_threads_edges \
  test_procs_edges test_api_args test_dict_api test_dict_batch test_dict_shm \
  test_dict_executors test_dict_redis test_http test_serve test_procpool_faults \
  test_dict_kill test_dict_chaos test_dict_counters test_executor_stress test_serve_load
VALGRIND = PF_TEST_TIMEOUT_SCALE=10 valgrind -q --error-exitcode=99 --leak-check=full \
  --show-possibly-lost=no --errors-for-leak-kinds=definite
valgrind: build
	cd build && $(VALGRIND) ./pfor-tests --exclude pool_runs_under_a_descriptor_limit_of_16 \
	  $(VALGRIND_TESTS)
	cd build && $(VALGRIND) --trace-children=yes --trace-children-skip='*gnuplot*' \
	  ./pfor-tests --exclude compare_workers_are_capped_to_the_descriptor_limit \
	  --exclude compare_cpu_executor_that_cannot_start_fails_the_run \
	  --exclude compare_cpu_failed_rows_have_no_speedup test_compare test_examples

check: test test-asan test-tsan valgrind

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf build build-asan build-tsan
