// Package docs holds no code. Its tests check the documentation in this
// directory and the README at the top of the repository: every relative
// link and #anchor resolves (links_test.go), every shell example runs
// against dev and prints what the text says it prints (examples_test.go,
// which also describes how examples are written), and the configuration
// reference has a row for every key of the config file
// (configuration_test.go).
package docs
