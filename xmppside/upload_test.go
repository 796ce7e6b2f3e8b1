package xmppside

import (
	"encoding/xml"
	"testing"
)

// Prosody 0.12's mod_http_file_share answers disco#info with XEP-0363
// §3's feature and its max-file-size in a XEP-0128 form (as the rig's
// Prosody answers in e2e TestProsodyUploadFacts); its slot (§4) has the
// GET and PUT URLs and an Authorization header.
const (
	prosodyUploadInfo = `<query xmlns="http://jabber.org/protocol/disco#info"><identity name="HTTP File Upload" category="store" type="file"></identity><feature var="http://jabber.org/protocol/disco#info"></feature><feature var="http://jabber.org/protocol/disco#items"></feature><feature var="urn:xmpp:http:upload:0"></feature><x xmlns="jabber:x:data" type="result"><field var="FORM_TYPE" type="hidden"><value>urn:xmpp:http:upload:0</value></field><field var="max-file-size" type="text-single"><value>10485760</value></field></x></query>`
	prosodySlot       = `<slot xmlns="urn:xmpp:http:upload:0"><get url="http://127.0.0.1:44713/file_share/vBKQ/a%20b.png"></get><put url="http://127.0.0.1:44713/file_share/vBKQ/a%20b.png"><header name="Authorization">Bearer eyJh.eyJz.9L6K</header></put></slot>`
)

func TestUploadServiceAnswers(t *testing.T) {
	var info uploadInfo
	if err := xml.Unmarshal([]byte(prosodyUploadInfo), &info); err != nil {
		t.Fatal(err)
	}
	if !info.has(NSUpload) || info.maxFileSize() != 10485760 {
		t.Errorf("has %t, max-file-size %d: want the feature and 10485760", info.has(NSUpload), info.maxFileSize())
	}
	// A max-file-size in a form of another FORM_TYPE is not the
	// service's (XEP-0128: a field means what its form type says).
	var other uploadInfo
	_ = xml.Unmarshal([]byte(`<query xmlns="http://jabber.org/protocol/disco#info"><x xmlns="jabber:x:data"><field var="FORM_TYPE"><value>urn:example</value></field><field var="max-file-size"><value>5</value></field></x></query>`), &other)
	if other.maxFileSize() != 0 {
		t.Errorf("max-file-size %d from another form", other.maxFileSize())
	}
	var slot UploadSlot
	if err := xml.Unmarshal([]byte(prosodySlot), &slot); err != nil {
		t.Fatal(err)
	}
	if slot.Get.URL != "http://127.0.0.1:44713/file_share/vBKQ/a%20b.png" || slot.Put.URL != slot.Get.URL ||
		len(slot.Put.Headers) != 1 || slot.Put.Headers[0].Name != "Authorization" || slot.Put.Headers[0].Value != "Bearer eyJh.eyJz.9L6K" {
		t.Errorf("slot %+v", slot)
	}
}
