from compute.cli import main

raise SystemExit(main())
