from ncacli.cli import main

raise SystemExit(main())
