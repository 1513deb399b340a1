from raftsched.cli.main import main

raise SystemExit(main())
