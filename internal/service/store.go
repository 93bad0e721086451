package service

import (
	"errors"
	"fmt"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// Store is the node's off-chain store: what an authority holds about
// residents (its register, the applications it received) and never puts on
// the chain. It is an interface so a deployment can put it in PostgreSQL; the
// embedded default is goleveldb, which the node already uses beside the tree.
type Store interface {
	Get(k string) ([]byte, error) // ErrNoRecord if absent
	Put(k string, v []byte) error
	Delete(k string) error
	// List returns the values under prefix p in key order.
	List(p string) ([][]byte, error)
	Close() error
}

// ErrNoRecord is returned for a key the store does not hold.
var ErrNoRecord = errors.New("no such record")

type levelStore struct{ db *leveldb.DB }

// OpenStore opens (or creates) the embedded store at dir; dir "" keeps it in
// memory, for tests.
func OpenStore(dir string) (Store, error) {
	var db *leveldb.DB
	var err error
	if dir == "" {
		db, err = leveldb.Open(storage.NewMemStorage(), nil)
	} else {
		db, err = leveldb.OpenFile(dir, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't open the off-chain store: %w", err)
	}
	return levelStore{db}, nil
}

func (s levelStore) Get(k string) ([]byte, error) {
	v, err := s.db.Get([]byte(k), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return nil, ErrNoRecord
	}
	return v, err
}

// Put writes synchronously: an application the resident was told is received
// must survive a crash.
func (s levelStore) Put(k string, v []byte) error {
	return s.db.Put([]byte(k), v, &opt.WriteOptions{Sync: true})
}

func (s levelStore) Delete(k string) error {
	return s.db.Delete([]byte(k), &opt.WriteOptions{Sync: true})
}

func (s levelStore) List(p string) ([][]byte, error) {
	it := s.db.NewIterator(util.BytesPrefix([]byte(p)), nil)
	defer it.Release()
	var out [][]byte
	for it.Next() {
		out = append(out, append([]byte(nil), it.Value()...))
	}
	return out, it.Error()
}

func (s levelStore) Close() error { return s.db.Close() }
