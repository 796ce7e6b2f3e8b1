package matrixside

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/rs/zerolog"

	"xmppbridge/mapping"
)

// fuzzServer decodes without a store or a core: decoding needs neither.
func fuzzServer() *Server {
	return &Server{Count: func(string, string) {}, Log: zerolog.Nop()}
}

// storedAgain is what the core gets back of out once stored as the bridge
// stores what it decoded itself (mapping.NewDecodedTxn, DecodedTxn).
func storedAgain(t *testing.T, out mapping.MatrixTxn) {
	t.Helper()
	if len(out.Receipts) == 0 && len(out.Typing) == 0 {
		return
	}
	txn, err := mapping.NewDecodedTxn(mapping.SyncedPrefix+"fuzz", out)
	if err != nil {
		t.Fatalf("decoded values that cannot be stored: %v", err)
	}
	back, ok, err := mapping.DecodedTxn(txn)
	if err != nil || !ok {
		t.Fatalf("a stored entry that cannot be read back: %v %v", ok, err)
	}
	if !reflect.DeepEqual(back.Receipts, out.Receipts) || !reflect.DeepEqual(back.Typing, out.Typing) {
		t.Fatalf("stored and read back, receipts %+v typing %+v became %+v and %+v", out.Receipts, out.Typing, back.Receipts, back.Typing)
	}
}

// FuzzDecodeTxn: no transaction body crashes the decoder of pushed
// transactions (application service API, PUT /transactions; MSC2409
// ephemeral events), nor an inbox entry the bridge wrote; what it decodes
// survives being stored.
func FuzzDecodeTxn(f *testing.F) {
	f.Add("t1", `{"events":[{"type":"m.room.member","state_key":"@_xmpp_juliet=40capulet.lit:example.org","room_id":"!dm:example.org","sender":"@alice:example.org","event_id":"$1","content":{"membership":"invite","displayname":"Juliet"}}]}`)
	f.Add("t2", `{"events":[{"type":"m.room.message","room_id":"!dm:example.org","sender":"@alice:example.org","event_id":"$2","origin_server_ts":1,"content":{"msgtype":"m.text","body":"hi"}}],"ephemeral":[{"type":"m.receipt","room_id":"!dm:example.org","content":{"$2":{"m.read":{"@alice:example.org":{"ts":1,"thread_id":"main"}}}}},{"type":"m.typing","room_id":"!dm:example.org","content":{"user_ids":["@alice:example.org"]}}]}`)
	f.Add("t3", `{"de.sorunome.msc2409.ephemeral":[{"type":"m.receipt","room_id":"!r","content":{"$e":{"m.delivery":{"@a:b":{}}}}}]}`)
	f.Add(mapping.SyncedPrefix+"s1", `{"receipts":[{"room":"!r","event":"$e","type":"m.read","user":"@a:b"}]}`)
	f.Add("t4", `{"events":[null,1,"x",{"type":""}],"ephemeral":[null,{"type":"m.receipt","content":[]}]}`)
	f.Fuzz(func(t *testing.T, txnID, body string) {
		storedAgain(t, fuzzServer().decode(&mapping.Txn{ID: txnID, Body: []byte(body)}))
	})
}

// FuzzDecodeSync: no /sync response crashes the reading of its receipts
// and typing (client-server API, GET /sync, rooms.join.*.ephemeral), and
// what it reads survives being stored.
func FuzzDecodeSync(f *testing.F) {
	f.Add(`{"next_batch":"s1","rooms":{"join":{"!dm:example.org":{"ephemeral":{"events":[{"type":"m.receipt","content":{"$e":{"m.read":{"@alice:example.org":{"ts":1}}}}},{"type":"m.typing","content":{"user_ids":["@alice:example.org"]}}]}}}}}`)
	f.Add(`{"next_batch":"s2","rooms":{"join":{"!a":null,"!b":{"ephemeral":{"events":[null]}}}}}`)
	f.Fuzz(func(t *testing.T, body string) {
		var resp syncResponse
		if json.Unmarshal([]byte(body), &resp) != nil {
			return
		}
		storedAgain(t, fuzzServer().decodeSynced(&resp))
	})
}
