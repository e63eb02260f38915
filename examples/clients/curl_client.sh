#!/usr/bin/env bash
# A tiny api.box client in bash and curl: generate a song, wait for it, separate its vocals (the result is
# called back to $STEMMOCK_CALLBACK_URL), poll until the stems are ready and download the vocals.
#
#   stemmock check-client -- bash examples/clients/curl_client.sh
#
# Against the real provider, set STEMMOCK_APIBOX_URL=https://api.api.box and STEMMOCK_API_KEY.
set -euo pipefail

base="${STEMMOCK_APIBOX_URL:?set STEMMOCK_APIBOX_URL, or run me under stemmock check-client}"
key="${STEMMOCK_API_KEY:?set STEMMOCK_API_KEY}"
callback="${STEMMOCK_CALLBACK_URL:?set STEMMOCK_CALLBACK_URL}"
# api.box documents polling record-info at most every 30 s; the mock's task time may run faster.
poll=$(awk -v scale="${STEMMOCK_TIME_SCALE:-1}" 'BEGIN { print 30 * scale }')

api() {  # METHOD PATH [JSON]: print the body; api.box answers HTTP 200 with its code in the body
  local body
  body=$(curl -sS -X "$1" "$base$2" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    ${3:+--data "$3"})
  if [[ "$(first_number code "$body")" != 200 ]]; then
    echo "api.box refused $1 $2: $body" >&2
    return 1
  fi
  printf '%s' "$body"
}
first_string() { grep -o "\"$1\":\"[^\"]*\"" <<<"$2" | head -n1 | cut -d'"' -f4; }
first_number() { grep -o "\"$1\":[0-9]*" <<<"$2" | head -n1 | cut -d: -f2; }

created=$(api POST /api/v1/generate "{\"customMode\": false, \"instrumental\": false, \"model\": \"V4_5\",
  \"prompt\": \"a calm piano song\", \"callBackUrl\": \"$callback\"}")
task=$(first_string taskId "$created")
echo "generating $task" >&2

for _ in $(seq 20); do
  sleep "$poll"
  info=$(api GET "/api/v1/generate/record-info?taskId=$task")
  status=$(first_string status "$info")
  # CALLBACK_EXCEPTION: done, only its callback could not be delivered
  [[ "$status" == SUCCESS || "$status" == CALLBACK_EXCEPTION ]] && break
  [[ "$status" == *FAILED* || "$status" == *ERROR* ]] && { echo "generation $status" >&2; exit 1; }
done
[[ "$status" == SUCCESS || "$status" == CALLBACK_EXCEPTION ]] || { echo "generation did not finish" >&2; exit 1; }
audio=$(grep -o '"sunoData":\[{"id":"[^"]*"' <<<"$info" | cut -d'"' -f6)

started=$(api POST /api/v1/vocal-removal/generate \
  "{\"taskId\": \"$task\", \"audioId\": \"$audio\", \"type\": \"separate_vocal\", \"callBackUrl\": \"$callback\"}")
separation=$(first_string taskId "$started")
echo "separating $separation" >&2

for _ in $(seq 20); do
  sleep "$poll"
  info=$(api GET "/api/v1/vocal-removal/record-info?taskId=$separation")
  flag=$(first_string successFlag "$info")
  [[ "$flag" == SUCCESS || "$flag" == CALLBACK_EXCEPTION ]] && break
  [[ "$flag" == *FAILED* ]] && { echo "separation $flag" >&2; exit 1; }
done
[[ "$flag" == SUCCESS || "$flag" == CALLBACK_EXCEPTION ]] || { echo "separation did not finish" >&2; exit 1; }

vocals=$(first_string vocalUrl "$info")
curl -sS --fail -o /dev/null "$vocals"
echo "vocals downloaded from $vocals" >&2
credits=$(api GET /api/v1/generate/credit)
echo "credits left: $(first_number data "$credits")" >&2
