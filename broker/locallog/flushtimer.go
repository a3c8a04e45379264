package locallog

import "time"

// FlushIfDue fsyncs the log when flush.ms (FlushIntervalMs) has passed since
// the last flush and something was appended since. The broker calls it from
// a timer, so a partition that received one write and then went quiet is
// still flushed on time (the append path alone only checks when the next
// write arrives).
func (l *Log) FlushIfDue(now time.Time) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed || l.cfg.FlushIntervalMs <= 0 || l.unflushedMsgs == 0 {
		return nil
	}
	if now.Sub(l.lastFlush).Milliseconds() < l.cfg.FlushIntervalMs {
		return nil
	}
	return l.flushWithWriteMu()
}
