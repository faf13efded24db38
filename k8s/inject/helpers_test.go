package inject

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
