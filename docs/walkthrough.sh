#!/usr/bin/env bash
# End-to-end walkthrough of the API with curl and jq, against `make dev` (127.0.0.1:8000).
set -euo pipefail
API=${API:-http://127.0.0.1:8000}
OUTBOX=${OUTBOX:-$(dirname "$0")/../.data/outbox}
run=$RANDOM  # fresh emails on every run

# Register two people (202, the same answer for a taken address) and log in (OAuth2 form).
for who in alice bob; do
  curl -sf "$API/auth/register" -H 'Content-Type: application/json' \
    -d "{\"email\": \"$who.$run@example.com\", \"password\": \"correct horse\", \"full_name\": \"${who^}\"}" >/dev/null
done
token() { curl -sf "$API/auth/login" -d "username=$1.$run@example.com&password=correct horse" | jq -r .access_token; }

# Confirm both addresses with the token mailed to them. `make dev`'s outbox worker writes each
# message to .data/outbox/<message id>.eml within a second; find it by its To header.
mailed_token() {
  python3 - "$OUTBOX" "$1.$run@example.com" <<'PY'
import email, email.policy, pathlib, sys, time
for _ in range(100):
    for path in sorted(pathlib.Path(sys.argv[1]).glob("*.eml"), key=lambda p: p.stat().st_mtime):
        message = email.message_from_binary_file(path.open("rb"), policy=email.policy.default)
        if message["To"] == sys.argv[2]:
            text = message.get_body(("plain",)).get_content()
            print(next(line[7:] for line in text.splitlines() if line.startswith("token: ")))
            sys.exit()
    time.sleep(0.1)
sys.exit(f"no mail to {sys.argv[2]} in {sys.argv[1]}")
PY
}
for who in alice bob; do
  curl -sf "$API/auth/verify-email" -H 'Content-Type: application/json' \
    -d "{\"token\": \"$(mailed_token $who)\"}" >/dev/null
done
ALICE="Authorization: Bearer $(token alice)"
BOB="Authorization: Bearer $(token bob)"

# Alice creates a trip; she is its owner.
TRIP=$(curl -sf "$API/trips" -H "$ALICE" -H 'Content-Type: application/json' -d '{
  "name": "Lisbon", "destination": "Portugal", "start_date": "2027-05-01",
  "end_date": "2027-05-04", "timezone": "Europe/Lisbon", "base_currency": "EUR"}' | jq -r .id)

# She invites Bob by email; Bob sees the invitation and accepts it.
curl -sf "$API/trips/$TRIP/invitations" -H "$ALICE" -H 'Content-Type: application/json' \
  -d "{\"email\": \"bob.$run@example.com\", \"role\": \"editor\"}" >/dev/null
INVITATION=$(curl -sf "$API/invitations" -H "$BOB" | jq -r '.items[0].id')
curl -sf -X POST "$API/invitations/$INVITATION/accept" -H "$BOB" | jq -c '{name, role}'

# Carol has no account: she joins the ledger as a guest.
curl -sf "$API/trips/$TRIP/guests" -H "$ALICE" -H 'Content-Type: application/json' \
  -d '{"name": "Carol"}' >/dev/null
PEOPLE=$(curl -sf "$API/trips/$TRIP/participants" -H "$ALICE")
id_of() { jq -r --arg n "$1" '.items[] | select(.name == $n) | .id' <<<"$PEOPLE"; }
A=$(id_of Alice) B=$(id_of Bob) C=$(id_of Carol)

# Two itinerary items on day one; the second is moved before the first.
item() {
  curl -sf "$API/trips/$TRIP/items" -H "$ALICE" -H 'Content-Type: application/json' -d "$1" | jq -r .id
}
TRAM=$(item '{"kind": "activity", "title": "Tram 28", "day": "2027-05-01",
  "start_local": "2027-05-01T10:00:00", "participant_ids": ["'"$A"'", "'"$B"'"]}')
CAFE=$(item '{"kind": "meal", "title": "Pasteis de Belem", "day": "2027-05-01"}')
curl -sf -X POST "$API/trips/$TRIP/items/$CAFE/move" -H "$BOB" -H 'Content-Type: application/json' \
  -d "{\"day\": \"2027-05-01\", \"before_id\": \"$TRAM\"}" >/dev/null
curl -sf "$API/trips/$TRIP/items?day=2027-05-01" -H "$ALICE" | jq -c '[.items[].title]'

# Expenses: Alice pays dinner for three (equal split); Bob pays a taxi in USD, 2:1 shares.
curl -sf "$API/trips/$TRIP/expenses" -H "$ALICE" -H 'Content-Type: application/json' -d '{
  "title": "Dinner", "amount_minor": 9000, "currency": "EUR", "spent_on": "2027-05-01",
  "payers": [{"participant_id": "'"$A"'", "amount_minor": 9000}], "split_mode": "equal",
  "splits": [{"participant_id": "'"$A"'"}, {"participant_id": "'"$B"'"}, {"participant_id": "'"$C"'"}]}' >/dev/null
curl -sf "$API/trips/$TRIP/expenses" -H "$BOB" -H 'Content-Type: application/json' -d '{
  "title": "Taxi", "amount_minor": 3000, "currency": "USD", "exchange_rate": "0.92",
  "spent_on": "2027-05-02", "payers": [{"participant_id": "'"$B"'", "amount_minor": 3000}],
  "split_mode": "shares", "splits": [{"participant_id": "'"$B"'", "shares": 2},
  {"participant_id": "'"$C"'", "shares": 1}]}' >/dev/null

# Balances in EUR (they sum to zero) and who pays whom to settle up.
curl -sf "$API/trips/$TRIP/balances" -H "$ALICE" | jq -c '.balances[] | {name, balance_minor}'
curl -sf "$API/trips/$TRIP/balances" -H "$ALICE" | jq -c '.settle_up'
