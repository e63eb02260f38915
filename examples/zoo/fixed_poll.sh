#!/usr/bin/env bash
# api.box client that polls record-info every second, whatever the documented 30 s (it ignores STEMMOCK_TIME_SCALE).
#
#   stemmock check-client -- bash examples/zoo/fixed_poll.sh
set -euo pipefail
base="$STEMMOCK_APIBOX_URL"; key="$STEMMOCK_API_KEY"
api() { curl -sS -X "$1" "$base$2" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' ${3:+--data "$3"}; }
task=$(api POST /api/v1/generate "{\"customMode\": false, \"instrumental\": false, \"model\": \"V4_5\",
  \"prompt\": \"a calm piano song\", \"callBackUrl\": \"$STEMMOCK_CALLBACK_URL\"}" | grep -o '"taskId":"[^"]*"' | cut -d'"' -f4)
for _ in $(seq 30); do
  status=$(api GET "/api/v1/generate/record-info?taskId=$task" | grep -o '"status":"[^"]*"' | head -n1 | cut -d'"' -f4)
  [[ "$status" == SUCCESS ]] && { echo "generated $task" >&2; exit 0; }
  [[ "$status" == *FAILED* || "$status" == *ERROR* ]] && { echo "generation $status" >&2; exit 1; }
  sleep 1  # the bug: a fixed interval
done
exit 1
