package bench

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// RecordSize is the size of every generated record value.
const RecordSize = 1024

var (
	evWords = []string{"page_view", "click", "add_to_cart", "checkout", "search", "login", "logout", "purchase"}
	evPaths = []string{"/", "/products", "/products/shoes", "/products/hats", "/cart", "/checkout", "/search", "/account", "/help"}
	evCtry  = []string{"DE", "FR", "US", "GB", "JP", "BR", "IN", "NL", "SE", "ES"}
	evDev   = []string{"mobile", "desktop", "tablet"}
	evUA    = []string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
	}
	evNote = strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu")
)

// GenerateRecords returns n JSON-like event records of exactly RecordSize
// bytes each, deterministic for a seed. Field names, enumerations and user
// agents repeat across records and random ids, numbers and hex blobs do not,
// so that a 1 MiB batch compresses about 2–4× with lz4.
func GenerateRecords(n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	out := make([][]byte, n)
	const hexd = "0123456789abcdef"
	for i := range out {
		var b strings.Builder
		b.Grow(RecordSize)
		fmt.Fprintf(&b, `{"ts":%d,"event":%q,"user_id":"u-%08d","session":"`,
			1_700_000_000_000+int64(i)*7+r.Int64N(7), evWords[r.IntN(len(evWords))], r.IntN(100_000_000))
		for range 16 {
			b.WriteByte(hexd[r.IntN(16)])
		}
		fmt.Fprintf(&b, `","country":%q,"device":%q,"path":"%s/%d","user_agent":%q,"latency_ms":%d,"status":%d,"cart":[`,
			evCtry[r.IntN(len(evCtry))], evDev[r.IntN(len(evDev))], evPaths[r.IntN(len(evPaths))], r.IntN(100000),
			evUA[r.IntN(len(evUA))], r.IntN(2000), []int{200, 200, 200, 201, 304, 404, 500}[r.IntN(7)])
		for k := range 3 {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"sku":"SKU-%06d","qty":%d,"price_cents":%d}`, r.IntN(1_000_000), 1+r.IntN(5), r.IntN(100_000))
		}
		b.WriteString(`],"trace":"`)
		for range 48 {
			b.WriteByte(hexd[r.IntN(16)])
		}
		b.WriteString(`","note":"`)
		// Pad to RecordSize with words and numbers, leaving room for `"}`.
		for b.Len() < RecordSize-2 {
			var w string
			if r.IntN(3) == 0 {
				w = strconv.Itoa(r.IntN(100000))
			} else {
				w = evNote[r.IntN(len(evNote))]
			}
			room := RecordSize - 2 - b.Len()
			if len(w)+1 > room {
				b.WriteString(strings.Repeat(".", room))
				break
			}
			b.WriteString(w)
			b.WriteByte(' ')
		}
		b.WriteString(`"}`)
		out[i] = []byte(b.String())
	}
	return out
}
