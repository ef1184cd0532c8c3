# Phase timing for .ci/run (sourced): `phase NAME CMD...` runs CMD and records its wall
# time; `test_phase NAME CMD...` also records each test binary's own time from libtest's
# "Running ..." / "finished in" lines. The table prints when the script exits, pass or
# fail, so every run (and every note) can quote where the minutes went. A script run
# from a timed phase (web/test.sh, web/build.sh) sources this too: it then adds its own
# rows, indented, to the parent's table, and prints nothing itself.
if [ -n "${CI_TIMES:-}" ]; then
  CI_NESTED=1
  CI_INDENT="${CI_INDENT:-}  "
  export CI_INDENT
else
  CI_NESTED=
  CI_INDENT=
  CI_TIMES=$(mktemp)
  CI_START=$(date +%s%N)
  export CI_TIMES
fi

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# The row is written when the phase starts (so rows nested inside it come after it) and
# its time filled in when it ends; a phase still running at exit shows "unfinished".
phase() {
  local name=$1 t0 row rc=0
  shift
  echo "== $name"
  printf '%s\t\t-1\n' "$CI_INDENT$name" >>"$CI_TIMES"
  row=$(wc -l <"$CI_TIMES")
  t0=$(date +%s%N)
  "$@" || rc=$?
  awk -F'\t' -v OFS='\t' -v row="$row" -v ms="$(ms_since "$t0")" -v rc="$rc" \
    'NR == row { $2 = ms; $3 = rc } { print }' "$CI_TIMES" >"$CI_TIMES.new"
  mv "$CI_TIMES.new" "$CI_TIMES"
  return "$rc"
}

# `bg_phase NAME CMD...` starts CMD in the background (its output to a log); `bg_wait
# NAME` waits for it, prints the log and adds two rows: the job's own time and the time
# the foreground spent waiting for it. One background job at a time.
bg_phase() {
  CI_BG_NAME=$1
  shift
  CI_BG_LOG=$(mktemp)
  echo "== $CI_BG_NAME (in the background)"
  (
    t0=$(date +%s%N)
    rc=0
    "$@" || rc=$?
    echo "$(ms_since "$t0") $rc" >"$CI_BG_LOG.done"
  ) >"$CI_BG_LOG" 2>&1 &
  CI_BG_PID=$!
}

bg_wait() {
  local t0 ms rc
  [ -n "${CI_BG_PID:-}" ] || return 0
  t0=$(date +%s%N)
  wait "$CI_BG_PID" || true
  echo "== $CI_BG_NAME (its output)"
  cat "$CI_BG_LOG"
  read -r ms rc <"$CI_BG_LOG.done" || { ms=0 rc=1; }
  printf '%s\t%s\t%s\n' "$CI_INDENT$CI_BG_NAME (in the background)" "$ms" "$rc" >>"$CI_TIMES"
  printf '%s\t%s\t%s\n' "$CI_INDENT  waiting for it" "$(ms_since "$t0")" 0 >>"$CI_TIMES"
  rm -f "$CI_BG_LOG" "$CI_BG_LOG.done"
  CI_BG_PID=
  return "$rc"
}

# Runs a cargo test command, passing its output through, and adds a "  test NAME" row for
# every test binary (libtest's own figure: the tests' run time, not process start-up).
test_phase() {
  local name=$1 log rc=0
  shift
  log=$(mktemp)
  phase "$name" bash -o pipefail -c '"$@" 2>&1 | tee "$0"' "$log" "$@" || rc=$?
  awk '
    /^ *Running / { bin = ($2 == "unittests") ? $3 : $2; sub(/^(tests|src)\//, "", bin); sub(/\.rs$/, "", bin) }
    /^ *Doc-tests / { bin = "doc-tests" }
    /^test result:/ && match($0, /finished in [0-9.]+s/) {
      secs = substr($0, RSTART + 12, RLENGTH - 13)
      printf "%s  test %s\t%d\t-\n", indent, bin, secs * 1000
    }' indent="$CI_INDENT" "$log" >>"$CI_TIMES"
  rm -f "$log"
  return "$rc"
}

print_phases() {
  local total
  total=$(ms_since "$CI_START")
  echo
  echo "== phase times (wall clock)"
  printf '%-44s %9s  %s\n' phase seconds status
  awk -F'\t' '$3 == -1 { printf "%-44s %9s  %s\n", $1, "-", "unfinished"; next }
                { st = ($3 == "-") ? "" : ($3 == 0 ? "ok" : "FAILED (" $3 ")");
                  printf "%-44s %9.1f  %s\n", $1, $2 / 1000, st }' "$CI_TIMES"
  printf '%-44s %9.1f\n' total "$(echo "$total" | awk '{ print $1 / 1000 }')"
  rm -f "$CI_TIMES"
}
[ -n "$CI_NESTED" ] || trap print_phases EXIT
