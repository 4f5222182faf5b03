package ring

// View is the routing snapshot one request or one pass uses: the ring
// data is placed by (Current) and, while a migration towards it runs, the
// ring it moves to (Target; nil otherwise). Writes during a migration go
// to the owners of both rings.
type View struct {
	Current *Ring
	Target  *Ring
	RF      int
}

// Owners returns id's owners in Current (old) and in Target (pending, nil
// outside a migration).
func (v View) Owners(id string) (old, pending []Member) {
	if v.Current != nil {
		old = v.Current.Owners(id, v.RF)
	}
	if v.Target != nil {
		pending = v.Target.Owners(id, v.RF)
	}
	return old, pending
}
