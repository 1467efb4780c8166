from soundsearch.cli import main

raise SystemExit(main())
