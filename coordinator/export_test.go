package coordinator

// CrashForTest stops the Store as a crash would: the keep-alive stops and the
// client closes, but the broker lease is not revoked, so it must expire.
func (s *Store) CrashForTest() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown(false) })
	return s.closeErr
}
