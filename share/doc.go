// Package share is the per-host store: each distinct file once under
// objects/ (named by its hash, read-only), package trees as directories of
// hard links to objects, a badger index of objects, packages, partial
// downloads, VM installs and reference counts, atomic commit and garbage
// collection, and the read-only views through which VMs see trees.
//
// share imports metadata only; it never imports transfer or node.
package share
