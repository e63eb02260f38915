#!/usr/bin/env bash
# api.box client that waits for SUCCESS and reads every other status as "still running", then reports success anyway.
#
#   stemmock check-client --task-outcome generateMusic=sensitive_word_error -- bash examples/zoo/ignores_failed.sh
set -euo pipefail
base="$STEMMOCK_APIBOX_URL"; key="$STEMMOCK_API_KEY"
poll=$(awk -v scale="${STEMMOCK_TIME_SCALE:-1}" 'BEGIN { print 30 * scale }')
api() { curl -sS -X "$1" "$base$2" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' ${3:+--data "$3"}; }
task=$(api POST /api/v1/generate "{\"customMode\": false, \"instrumental\": false, \"model\": \"V4_5\",
  \"prompt\": \"a calm piano song\", \"callBackUrl\": \"$STEMMOCK_CALLBACK_URL\"}" | grep -o '"taskId":"[^"]*"' | cut -d'"' -f4)
for _ in $(seq 6); do
  sleep "$poll"
  status=$(api GET "/api/v1/generate/record-info?taskId=$task" | grep -o '"status":"[^"]*"' | head -n1 | cut -d'"' -f4)
  [[ "$status" == SUCCESS ]] && break  # the bug: SENSITIVE_WORD_ERROR and the *_FAILED statuses never end the loop
done
echo "done: $task"  # and the run counts as a success
