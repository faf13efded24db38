// Package docs holds no code. Its tests check the documentation in this
// directory and the README at the top of the repository: every relative
// link and #anchor resolves (links_test.go), and every shell example runs
// against dev and prints what the text says it prints (examples_test.go,
// which also describes how examples are written).
package docs
