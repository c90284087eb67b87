#!/usr/bin/env bash
# The whole test suite in both run modes (tests/conftest.py), as three pytest runs at once: the
# embedded pass, the production pass, and the production pass's fault suite (tests/faults: its
# kills and restarts are its longest tests). Each run has its own test database, Celery queue,
# channel and limits prefixes (config/settings/test.py) and its own live servers; most of a run's
# time is waiting on them, so together they take little more than the longest one alone. Each
# run's output is shown when all have ended; the exit status is non-zero if any failed. Arguments
# go to every pytest run.
set -u
python="${PYTHON:-.venv/bin/python}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

names=("embedded pass" "production pass" "production pass: the fault suite")
PARLEY_TEST_STACK=embedded "$python" -m pytest "$@" >"$logs/0" 2>&1 &
pids=($!)
PARLEY_TEST_STACK=production "$python" -m pytest --ignore=tests/faults "$@" >"$logs/1" 2>&1 &
pids+=($!)
PARLEY_TEST_STACK=production "$python" -m pytest tests/faults "$@" >"$logs/2" 2>&1 &
pids+=($!)

statuses=()
for pid in "${pids[@]}"; do
    wait "$pid"
    statuses+=($?)
done
failed=0
for index in 0 1 2; do
    echo "==================== ${names[$index]} ===================="
    cat "$logs/$index"
done
for index in 0 1 2; do
    echo "${names[$index]}: exit ${statuses[$index]}"
    [ "${statuses[$index]}" -eq 0 ] || failed=1
done
exit "$failed"
