package zk

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/go-zookeeper/zk"

	"github.com/goblocks/goblocks/node/volume"
)

// Volumes is the volume catalog kept under <root>/volumes, one persistent
// znode per volume holding its JSON record. ZooKeeper's create is the
// atomic "create if absent" two concurrent `volume create` need; the
// records carry this node's ACL like every other znode.
type Volumes struct{ s *Store }

// Volumes returns the catalog over this store's session.
func (s *Store) Volumes() Volumes { return Volumes{s} }

var _ volume.Catalog = Volumes{}

func (c Volumes) path(name string) string { return c.s.p("volumes", name) }

// Create adds v; volume.ErrExists if the name is taken.
func (c Volumes) Create(v volume.Volume) error {
	if err := v.Validate(); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := c.s.createParents(c.s.p("volumes")); err != nil {
		return err
	}
	_, err = c.s.conn.Create(c.path(v.Name), data, 0, c.s.acl)
	if errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("%w: %s", volume.ErrExists, v.Name)
	}
	return err
}

// Get returns the record of name. A record that does not decode or
// validate is an error naming its znode (and is reported by Problems): a
// client that wrote garbage there makes the volume unusable, never
// silently resized.
func (c Volumes) Get(name string) (volume.Volume, error) {
	if err := volume.ValidateName(name); err != nil {
		return volume.Volume{}, err
	}
	v, _, err := c.read(name)
	return v, err
}

func (c Volumes) read(name string) (volume.Volume, int32, error) {
	p := c.path(name)
	data, stat, err := c.s.conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		return volume.Volume{}, 0, fmt.Errorf("%w: %s", volume.ErrNotFound, name)
	}
	if err != nil {
		return volume.Volume{}, 0, err
	}
	var v volume.Volume
	err = decode(data, &v, func(v volume.Volume) error {
		if err := v.Validate(); err != nil {
			return err
		}
		if v.Name != name {
			return fmt.Errorf("record names volume %q", v.Name)
		}
		return nil
	})
	if err := c.s.checked(p, err); err != nil {
		return volume.Volume{}, 0, fmt.Errorf("volume record %s in zookeeper is invalid (%w); fix or delete the znode", p, err)
	}
	return v, stat.Version, nil
}

// List returns every valid record sorted by name; invalid ones are in bad.
func (c Volumes) List() ([]volume.Volume, map[string]string, error) {
	names, _, err := c.s.conn.Children(c.s.p("volumes"))
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(names)
	var vols []volume.Volume
	bad := map[string]string{}
	for _, name := range names {
		v, _, err := c.read(name)
		switch {
		case errors.Is(err, volume.ErrNotFound): // removed since Children
		case err != nil:
			bad[c.path(name)] = err.Error()
		default:
			vols = append(vols, v)
		}
	}
	return vols, bad, nil
}

// SetState changes the state of name, conditional on the version read so
// a concurrent change is not overwritten.
func (c Volumes) SetState(name, state string) error {
	v, version, err := c.read(name)
	if err != nil {
		return err
	}
	v.State = state
	if err := v.Validate(); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = c.s.conn.Set(c.path(name), data, version)
	if errors.Is(err, zk.ErrBadVersion) {
		return fmt.Errorf("volume %s changed while its state was being set; try again", name)
	}
	return err
}

// Delete removes the record of name.
func (c Volumes) Delete(name string) error {
	if err := volume.ValidateName(name); err != nil {
		return err
	}
	err := c.s.conn.Delete(c.path(name), -1)
	if errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("%w: %s", volume.ErrNotFound, name)
	}
	return err
}
