module github.com/xfaas/xfaas/sdk/go

go 1.24
