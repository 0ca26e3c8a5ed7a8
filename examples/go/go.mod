module lockgate.example/go

go 1.19
