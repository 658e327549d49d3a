module github.com/compresskv/compresskv

go 1.24
