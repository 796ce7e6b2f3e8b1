package main

import (
	"io"
	"net"
	"sync"
)

// cutProxy stands between the bridge and PostgreSQL and cuts every
// connection through it on demand (DRILL_CRASH=pgcut): what a network
// blip, a pooler's restart or a server killed under its clients does to
// the bridge, without the seconds PostgreSQL takes to come back. A cut
// lands wherever the bridge is: mid-statement, between a COMMIT sent and
// its answer read. Cheap enough to do dozens of times a second, which a
// restart of the server is not: the drill that finds a rare mishandled
// failure is the one that causes many.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
	cuts   int
}

func newCutProxy(target string) (*cutProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.accept()
	return p, nil
}

// Addr is where the bridge connects, host:port.
func (p *cutProxy) Addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *cutProxy) pipe(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(s, c)
	go cp(c, s)
	<-done
	c.Close()
	s.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// Cut closes every connection through the proxy, both ends: the bridge
// reads a reset, PostgreSQL rolls back what was not committed.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.cuts++
}

func (p *cutProxy) Close() {
	p.ln.Close()
	p.Cut()
}
